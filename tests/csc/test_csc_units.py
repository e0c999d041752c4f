"""Pure parts of the CSC, without DDS: raw lookup, camera-event parsing, correction steps, the closed-loop
state machine, the intake with a fake sink and clock, and the result summary."""

import asyncio
import itertools
import logging
import pickle
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from csc_fakes import dying_processor, fake_processor, obsid, write_raw

from lsst.ts.auxtelwep.cadence import CadenceLimits, Triplet, TripletState
from lsst.ts.auxtelwep.closed_loop import (
    ClosedLoop,
    ClosedLoopState,
    IllegalLoopTransitionError,
    correction_significance,
    plan_step,
)
from lsst.ts.auxtelwep.config import ApplyConfig
from lsst.ts.auxtelwep.csc_corrections import CorrectionSender, NothingSignificantError, as_sent
from lsst.ts.auxtelwep.csc_intake import ImageIntake, kind_name
from lsst.ts.auxtelwep.csc_worker import WepSummary
from lsst.ts.auxtelwep.errors import ConfigurationError, InputError, RawFormatError
from lsst.ts.auxtelwep.instrument import HexapodState, Role, pair_camera_angle
from lsst.ts.auxtelwep.intake import (
    ImageInfo,
    RawLocator,
    day_obs_from_obsid,
    parse_additional,
    read_image_info,
)
from lsst.ts.auxtelwep.journal import CorrectionState, ImageStatus, Journal
from lsst.ts.auxtelwep.m2_moves import M2MoveWatcher
from lsst.ts.auxtelwep.sal import (
    AckError,
    AckTimeoutError,
    CommandNotSentError,
    ExpectedError,
    SalRetCode,
    State,
    current_tai,
)

GAINS = (0.5, 0.5, 0.9, 0.5, 0.5)
MAX_STEP = (0.5, 0.5, 0.1, 0.05, 0.05)
MAX_TOTAL = (2.0, 2.0, 0.5, 0.2, 0.2)


def test_raw_layout_and_uri(tmp_path: Path) -> None:
    name = write_raw(tmp_path, 106, "INTRA")
    assert name == "AT_O_20240624_000106"
    assert day_obs_from_obsid(name) == "20240624"
    for root in (str(tmp_path), tmp_path.as_uri()):
        locator = RawLocator(root)
        assert locator.find(name) == tmp_path / "raw" / "20240624" / f"{name}.fits"
        assert locator.find(obsid(107)) is None
        locator.check_readable()
    info = read_image_info(RawLocator(str(tmp_path)).find(name))
    assert (info.obsid, info.reason, info.focus_z_mm, info.group_id) == (name, "INTRA", 0.8, "G1")
    with pytest.raises(ConfigurationError, match="only local paths and file:// URIs"):
        RawLocator("s3://bucket/auxtel")
    with pytest.raises(ConfigurationError, match="is not a readable directory"):
        RawLocator(str(tmp_path / "nowhere")).check_readable()
    with pytest.raises(InputError, match="not of the form AT_O_YYYYMMDD_NNNNNN"):
        day_obs_from_obsid("image42")
    with pytest.raises(RawFormatError, match="not a readable FITS file"):
        (tmp_path / "junk.fits").write_text("not fits")
        read_image_info(tmp_path / "junk.fits")


def test_additional_keys() -> None:
    assert parse_additional("groupId:imageType:reason", "G1:CWFS:INTRA") == {
        "groupid": "G1",
        "imagetype": "CWFS",
        "reason": "INTRA",
    }
    assert parse_additional("", "") == {}
    # Group ids are ISO times in practice: their colons are not separators.
    assert parse_additional("groupId:imageType:reason", "2024-06-25T02:00:00.000:CWFS:INTRA") == {
        "groupid": "2024-06-25T02:00:00.000",
        "imagetype": "CWFS",
        "reason": "INTRA",
    }
    with pytest.raises(InputError, match="has 2 items but additionalValues='G1' has 1"):
        parse_additional("groupId:imageType", "G1")


def test_plan_step_gains_and_limits() -> None:
    raw = HexapodState(x=2.0, y=-0.3, z=0.5, u=0.2, v=0.0)
    step = plan_step(raw, gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=np.zeros(5))
    # x (1.0 -> 0.5) and u (0.1 -> 0.05) halved by max_step, y with them: decenter and tilt keep their
    # direction and balance; z is clipped alone.
    np.testing.assert_allclose(step.offset.as_array(), [0.5, -0.075, 0.1, 0.05, 0.0])
    assert step.clipped_axes == ("x", "y", "z", "u") and "x +1.0000 -> +0.5000" in step.message
    # Only the room left under the total limit is used; an axis beyond it (limit lowered) may only move back.
    total = np.array([1.8, 0.0, 0.7, 0.0, 0.0])
    step = plan_step(raw, gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=total)
    np.testing.assert_allclose(step.offset.as_array()[[0, 2]], [0.2, 0.0])
    back = plan_step(-raw, gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=total)
    np.testing.assert_allclose(back.offset.z, -0.1)
    # Unsolved axes do not move.
    xyz = plan_step(
        raw, gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=np.zeros(5), solved_axes="xyz"
    )
    assert xyz.offset.u == 0.0


def test_plan_step_never_exceeds_limits_random() -> None:
    rng = np.random.default_rng(12)
    total = np.zeros(5)
    for _ in range(200):
        raw = HexapodState.from_array(rng.normal(0.0, 1.0, 5))
        step = plan_step(raw, gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=total)
        offset = step.offset.as_array()
        assert np.all(np.abs(offset) <= np.array(MAX_STEP) + 1e-12)
        total = total + offset
        assert np.all(np.abs(total) <= np.array(MAX_TOTAL) + 1e-12)
        # Never against the correction's sign, never more than asked.
        wanted = raw.as_array() * GAINS
        assert np.all(offset * wanted >= -1e-15) and np.all(np.abs(offset) <= np.abs(wanted) + 1e-12)


def test_plan_step_refuses_bad_input() -> None:
    with pytest.raises(InputError, match="gains needs 5 values"):
        plan_step(HexapodState(), gains=(1, 1, 1), max_step=MAX_STEP, max_total=MAX_TOTAL, total=np.zeros(5))
    with pytest.raises(InputError, match="unknown solved axes"):
        plan_step(
            HexapodState(),
            gains=GAINS,
            max_step=MAX_STEP,
            max_total=MAX_TOTAL,
            total=np.zeros(5),
            solved_axes="w",
        )


def test_nothing_that_is_not_finite_reaches_ataos() -> None:
    nan = float("nan")
    with pytest.raises(InputError, match="hexapod x=nan"):
        HexapodState(x=nan)  # so neither a correction nor a journaled one can be NaN
    with pytest.raises(InputError, match="max_total not finite"):
        plan_step(
            HexapodState(), gains=GAINS, max_step=MAX_STEP, max_total=(np.inf, 1, 1, 1, 1), total=np.zeros(5)
        )
    for field, words in (
        ("gains", r"in \[0, 1\]"),
        ("max_step", "finite number"),
        ("max_total", "finite number"),
    ):
        with pytest.raises(pydantic.ValidationError, match=words):
            ApplyConfig.model_validate({field: {"x": nan, "y": 0.1, "z": 0.1, "u": 0.1, "v": 0.1}})


def test_plan_step_takes_the_configuration_as_it_is() -> None:
    config = ApplyConfig()
    raw = HexapodState(x=2.0, y=-0.3, z=0.5, u=0.2, v=0.0)
    given = plan_step(
        raw, gains=config.gains, max_step=config.max_step, max_total=config.max_total, total=HexapodState()
    )
    arrays = plan_step(
        raw,
        gains=config.gains.as_array(),
        max_step=config.max_step.as_array(),
        max_total=config.max_total.as_array(),
        total=np.zeros(5),
    )
    assert given == arrays
    with pytest.raises(InputError, match=r"correction: expected HexapodState, got tuple"):
        plan_step((0.2, 0, 0, 0, 0), gains=GAINS, max_step=MAX_STEP, max_total=MAX_TOTAL, total=np.zeros(5))


def _sender(journal: Journal, **config: Any) -> CorrectionSender:
    return CorrectionSender(
        journal=journal,
        ataos=None,
        config=ApplyConfig(**config),
        log=logging.getLogger(),
        moves=M2MoveWatcher(fault_grace_s=0.0),
    )


def _ataos_event(**fields: Any) -> Any:
    """An ATAOS event sample (``hexapodCorrectionStarted``, ``summaryState``...) written now."""
    return types.SimpleNamespace(private_sndStamp=current_tai(), **fields)


def _m2_moves(sender: CorrectionSender) -> float:
    """Report one whole hexapod move of ATAOS to ``sender``; return when it was seen to end."""
    sender.moves.on_started(_ataos_event())
    time.sleep(0.002)
    sender.moves.on_completed(_ataos_event())
    return time.time()


def _sent_and_acknowledged(journal: Journal, sender: CorrectionSender, key: str) -> None:
    """Send the correction of ``key`` as the CSC does, ATAOS acknowledging it now."""
    journal.claim_correction(key, sender.prepare(key))
    journal.finish_correction(key, CorrectionState.APPLIED)
    journal.mark_acked(key, current_tai())


def _received(journal: Journal, obsids: list[str]) -> list[ImageInfo]:
    infos = [ImageInfo(obsid=o) for o in obsids]
    for info in infos:
        journal.add_image(info.obsid, status=ImageStatus.IN_TRIPLET, info=info)
    return infos


def _measured(journal: Journal, key: str, infos: list[ImageInfo]) -> None:
    """Journal the triplet of ``infos`` with its correction, 0.2 mm in x."""
    journal.add_triplet(
        Triplet(group_id=key, intra=infos[0], extra=infos[1], infocus=infos[2]), source="events", key=key
    )
    journal.add_correction(key, key, HexapodState(x=0.2))


def _ack(code: SalRetCode, result: str = "") -> Any:
    """An ``ackcmd``-like sample with ``code``."""
    return types.SimpleNamespace(ack=int(code), error=0, result=result)


def test_a_correction_measured_before_the_last_offset_is_not_sent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    second = _received(journal, [obsid(4), obsid(5), obsid(6)])  # taken before G1's offset went out
    journal.claim_correction("G1", sender.prepare("G1"))
    journal.finish_correction("G1", CorrectionState.APPLIED)
    _m2_moves(sender)
    _measured(journal, "G2", second)
    with pytest.raises(ExpectedError, match=rf"{obsid(4)}, {obsid(5)}, {obsid(6)} came before the last"):
        sender.prepare("G2")
    # Images received after it describe M2 as it is now.
    time.sleep(0.01)
    _measured(journal, "G3", _received(journal, [obsid(7), obsid(8), obsid(9)]))
    assert sender.prepare("G3").x == pytest.approx(0.2)
    journal.close()


def test_an_exposure_started_before_the_last_offset_is_stale_however_late_it_came(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    journal.claim_correction("G1", sender.prepare("G1"))
    journal.finish_correction("G1", CorrectionState.APPLIED)
    moved = _m2_moves(sender)
    time.sleep(0.01)
    # Received after the offset, but the intra exposure was open while M2 moved.
    infos = [ImageInfo(obsid=obsid(4), exposure_start=moved - 1.0), ImageInfo(obsid=obsid(5))]
    # Its header says when it began: its exposure time says nothing more (simulated ones take less).
    infos.append(ImageInfo(obsid=obsid(6), exposure_start=moved + 5.0, exposure_time_s=30.0))
    for info in infos:
        journal.add_image(info.obsid, status=ImageStatus.IN_TRIPLET, info=info)
    _measured(journal, "G2", infos)
    with pytest.raises(ExpectedError, match=rf"{obsid(4)} came before the last offset"):
        sender.prepare("G2")
    # Without a start time in its header: first seen after M2 settled, but less than its exposure time after.
    late = [ImageInfo(obsid=obsid(7), exposure_time_s=30.0), ImageInfo(obsid=obsid(8))]
    late.append(ImageInfo(obsid=obsid(9), exposure_time_s=0.001))
    for info in late:
        journal.add_image(info.obsid, status=ImageStatus.IN_TRIPLET, info=info)
    _measured(journal, "G3", late)
    with pytest.raises(ExpectedError, match=rf"not sent: {obsid(7)} came before the last offset"):
        sender.prepare("G3")
    journal.close()


def test_an_offset_is_in_effect_once_ataos_reports_a_move_it_started_after_acknowledging_it(
    tmp_path: Path,
) -> None:
    # ATAOS acknowledges an offset while the shutter is open and moves M2 once it closes: images that start
    # after the acknowledgement but before the move's end show M2 as it was, or moving.
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    journal.claim_correction("G1", sender.prepare("G1"))
    # A move of the run that held ATAOS's loop while the offset waited for it: written after the send, but
    # its target was computed without the offset.
    _m2_moves(sender)
    sender.settle()
    assert journal.last_move().settled is None  # in flight: never settled
    time.sleep(0.002)
    journal.finish_correction("G1", CorrectionState.APPLIED)
    journal.mark_acked("G1", current_tai())
    time.sleep(0.01)
    during = _received(journal, [obsid(4), obsid(5), obsid(6)])
    _measured(journal, "G2", during)
    with pytest.raises(ExpectedError, match="M2 may still be moving for the offset of group G1"):
        sender.prepare("G2")
    settled = _m2_moves(sender)  # the deferred move, after the acknowledgement
    with pytest.raises(ExpectedError, match=rf"{obsid(4)}, {obsid(5)}, {obsid(6)} came before the last"):
        sender.prepare("G2")
    assert journal.last_move().settled == pytest.approx(settled, abs=0.01)
    time.sleep(0.01)
    _measured(journal, "G3", _received(journal, [obsid(7), obsid(8), obsid(9)]))
    assert sender.prepare("G3").x == pytest.approx(0.2)
    journal.close()


def test_a_failed_move_does_not_settle_an_offset(tmp_path: Path) -> None:
    # ATAOS writes hexapodCorrectionCompleted even when the hexapod's move failed, then goes to FAULT.
    journal = Journal(tmp_path / "j.sqlite3")
    sender = CorrectionSender(
        journal=journal,
        ataos=None,
        config=ApplyConfig(settle_timeout_s=0.01),
        log=logging.getLogger(),
        moves=M2MoveWatcher(fault_grace_s=0.2),
    )
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    _sent_and_acknowledged(journal, sender, "G1")
    _m2_moves(sender)
    sender.settle()
    assert journal.last_move().settled is None  # a FAULT may still come
    sender.moves.on_summary_state(_ataos_event(summaryState=State.FAULT))
    time.sleep(0.25)
    sender.settle()
    # Failed, and no settling by the timeout either while ATAOS is not ENABLED: where M2 is is unknown.
    assert journal.last_move().settled is None
    sender.moves.on_summary_state(_ataos_event(summaryState=State.ENABLED))
    settled = _m2_moves(sender)  # re-enabled, ATAOS moves M2 to its model, offset included
    time.sleep(0.25)
    sender.settle()
    assert journal.last_move().settled == pytest.approx(settled, abs=0.01)
    journal.close()


def test_an_offset_no_move_is_reported_for_is_taken_as_in_effect_after_the_settle_timeout(
    tmp_path: Path,
) -> None:
    # ATAOS moves nothing for an offset within its tolerance; a restart of the CSC loses the move's events.
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal, settle_timeout_s=0.05)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    journal.claim_correction("G1", sender.prepare("G1"))
    sender.settle(now=time.time() + 1.0)
    assert journal.last_move().settled is None  # still in flight: never given up on
    journal.finish_correction("G1", CorrectionState.APPLIED)
    answered = journal.last_move().answered
    time.sleep(0.01)
    _measured(journal, "G2", _received(journal, [obsid(4), obsid(5), obsid(6)]))
    with pytest.raises(ExpectedError, match="M2 may still be moving"):
        sender.prepare("G2")
    time.sleep(0.06)
    with pytest.raises(ExpectedError, match=r"came before the last offset to M2 \(group G1\) was in effect"):
        sender.prepare("G2")
    move = journal.last_move()
    assert move.settled == pytest.approx(answered + 0.05) and move.provisional
    # The move comes after all (a long exposure ended): it replaces the assumption, within 2 timeouts.
    settled = _m2_moves(sender)
    sender.settle()
    move = journal.last_move()
    assert move.settled == pytest.approx(settled, abs=0.01) and not move.provisional
    _measured(journal, "G3", _received(journal, [obsid(7), obsid(8), obsid(9)]))
    assert sender.prepare("G3").x == pytest.approx(0.2)
    journal.close()


def test_a_move_reported_within_twice_the_timeout_replaces_the_assumption_however_late_it_is_looked_at(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal, settle_timeout_s=0.1)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    _sent_and_acknowledged(journal, sender, "G1")
    answered = journal.last_move().answered
    # A move under way at the timeout (a deferred move): nothing is assumed while M2 moves.
    sender.moves.on_started(_ataos_event())
    time.sleep(0.11)
    sender.settle()
    assert journal.last_move().settled is None
    time.sleep(0.02)
    sender.moves.on_completed(_ataos_event())
    ended = time.time()
    time.sleep(0.1)  # past twice the timeout before anyone looks
    sender.settle()
    move = journal.last_move()
    assert move.settled == pytest.approx(ended, abs=0.01) and not move.provisional
    assert answered + 0.1 < move.settled < answered + 0.2
    journal.close()


def test_a_provisional_settlement_is_replaced_by_a_move_that_ended_within_the_window(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal, settle_timeout_s=0.1)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    _sent_and_acknowledged(journal, sender, "G1")
    time.sleep(0.11)
    sender.settle()
    assert journal.last_move().provisional
    moved = _m2_moves(sender)  # within twice the timeout...
    time.sleep(0.12)  # ...but only looked at after it
    sender.settle()
    move = journal.last_move()
    assert move.settled == pytest.approx(moved, abs=0.01) and not move.provisional
    journal.close()


def test_the_m2_move_watcher_pairs_starts_and_ends_by_ataos_stamps() -> None:
    watcher = M2MoveWatcher(max_moves=50, fault_grace_s=0.0)
    ack = current_tai()
    # A late joiner's history: a move before the acknowledgement says nothing; one after it, received at a
    # restart, counts from its receipt.
    old = _ataos_event()
    old.private_sndStamp = ack - 10.0
    watcher.on_started(old)
    watcher.on_completed(old)
    assert watcher.completed_after(stamp=ack) is None
    start, end = _ataos_event(), _ataos_event()
    end.private_sndStamp = start.private_sndStamp + 0.5
    watcher.on_completed(end)  # read before its start: the two topics have separate readers
    watcher.on_started(start)
    assert watcher.completed_after(stamp=ack) == pytest.approx(time.time(), abs=0.05)
    assert watcher.completed_after(stamp=ack + 100.0) is None  # no move started after that
    # A night of moves (more than it keeps) goes on being recorded.
    for k in range(120):
        sample = _ataos_event()
        sample.private_sndStamp = ack + 200.0 + k
        watcher.on_started(sample)
        watcher.on_completed(sample)
    assert watcher.completed_after(stamp=ack + 300.0) is not None
    assert watcher.completed_after(stamp=ack + 400.0) is None


def test_corrections_journaled_before_the_moves_table_settled_when_answered(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    journal.claim_correction("G1", HexapodState(x=0.2))
    journal.finish_correction("G1", CorrectionState.APPLIED)
    journal._db.execute("DELETE FROM moves")  # as a journal written by an older version
    move = journal.last_move()
    assert move is not None and move.settled == move.answered == move.sent
    with pytest.raises(InputError, match="no offset was sent for 'G2'"):
        journal.mark_settled("G2", time.time())
    journal.close()


def test_the_closed_loop_does_not_apply_images_taken_before_it_started(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))  # while the CSC was down
    time.sleep(0.01)
    journal.mark_loop_start()  # startClosedLoop: no new epoch, but the loop's start still counts
    with pytest.raises(ExpectedError, match="came before the closed loop started"):
        sender.prepare("G1", automatic=True)
    assert sender.prepare("G1").x == pytest.approx(0.2)  # issueCorrection, asked for: sent
    journal.close()


def test_the_closed_loop_sends_a_correction_only_if_it_is_significant_as_a_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)  # min_significance 2

    def measured(key: str, first: int, sigma: list[float]) -> None:
        _measured(journal, key, _received(journal, [obsid(first), obsid(first + 1), obsid(first + 2)]))
        journal.set_triplet_state(key, TripletState.PROCESSING)
        journal.set_triplet_state(key, TripletState.DONE, result={"correction_sigma": sigma})

    measured("G1", 1, [0.05, 0.01, 0.0, 0.0, 0.0])  # x 0.2 mm: 4 sigma
    assert sender.prepare("G1", automatic=True).x == pytest.approx(0.2)
    journal.finish_correction("G1", CorrectionState.APPLIED)
    _m2_moves(sender)
    time.sleep(0.01)
    measured("G2", 4, [0.15, 0, 0, 0, 0])  # 1.3 sigma
    with pytest.raises(
        NothingSignificantError, match=r"1\.3 sigma from zero, not more than min_significance=2"
    ):
        sender.prepare("G2", automatic=True)
    assert sender.prepare("G2").x == pytest.approx(0.2)  # issueCorrection sends what was measured
    journal.close()
    # Judged as a whole: x, y and z at 1.8 sigma each (none above 2) are 2.3 sigma together.
    values, errors = HexapodState(x=0.18, y=-0.18, z=0.018), HexapodState(x=0.1, y=0.1, z=0.01)
    assert correction_significance(values, errors) == pytest.approx(2.31, abs=0.01)
    assert correction_significance(HexapodState(x=0.2), HexapodState(x=0.1)) == pytest.approx(2.0)
    assert correction_significance(HexapodState(), HexapodState()) == 0.0
    assert correction_significance(HexapodState(x=0.2), HexapodState()) == np.inf  # error unknown: sent


def test_the_total_limit_counts_what_is_sent_in_the_epoch(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    limits = {"max_total": {"x": 0.3, "y": 2.0, "z": 0.5, "u": 0.2, "v": 0.2}}
    sender = _sender(journal, **limits)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))  # before the epoch below
    journal.new_epoch("enable")
    journal.claim_correction("G1", sender.prepare("G1"))
    journal.finish_correction("G1", CorrectionState.APPLIED)
    np.testing.assert_allclose(journal.total_applied(), [0.2, 0, 0, 0, 0])  # sent in this epoch: counted
    _m2_moves(sender)
    time.sleep(0.01)
    _measured(journal, "G2", _received(journal, [obsid(4), obsid(5), obsid(6)]))
    assert sender.prepare("G2").x == pytest.approx(0.1)  # 0.3 - 0.2 left
    journal.claim_correction("G2", HexapodState(x=0.1))
    journal.finish_correction("G2", CorrectionState.APPLIED)
    _m2_moves(sender)
    time.sleep(0.01)
    _measured(journal, "G3", _received(journal, [obsid(7), obsid(8), obsid(9)]))
    with pytest.raises(ExpectedError, match=r"x \+0.2000 -> \+0.0000, nothing left"):
        sender.prepare("G3")  # clipped to nothing: refused rather than a zero offset reported as done
    journal.close()


def test_the_offset_is_journaled_as_ataos_gets_it_and_float32_never_exceeds_a_limit(tmp_path: Path) -> None:
    # ATAOS offset's fields are float32 (ts_xml): what is claimed, totalled and reported is what it gets.
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal, max_total={"x": 0.3, "y": 2.0, "z": 0.5, "u": 0.2, "v": 0.2})
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    offset = sender.prepare("G1")
    values = offset.as_array()
    np.testing.assert_array_equal(values.astype(np.float32).astype(float), values)
    assert journal.correction("G1").applied == offset
    assert offset.x == pytest.approx(0.2, abs=1e-7) and offset.x <= 0.2
    journal.finish_correction("G1", CorrectionState.APPLIED)
    _m2_moves(sender)
    time.sleep(0.01)
    _measured(journal, "G2", _received(journal, [obsid(4), obsid(5), obsid(6)]))
    # The room left (0.3 - 0.2) in float32 rounded up would exceed max_total: rounded towards zero.
    second = sender.prepare("G2")
    assert journal.total_applied()[0] <= 0.3
    assert second.x == pytest.approx(0.1, abs=1e-7)
    for value in (0.1, -0.1, 0.3, -0.15, 1e-3, 0.0):
        sent = as_sent(HexapodState(x=value)).x
        assert float(np.float32(sent)) == sent and abs(sent) <= abs(value) and sent == pytest.approx(value)
    # What the rounding leaves of the room (~1e-8 of a 0.3 mm limit) is no correction.
    assert as_sent(HexapodState(x=1.5e-8, z=1e-4), [0.3, 2.0, 0.5, 0.2, 0.2]) == HexapodState(
        z=as_sent(HexapodState(z=1e-4)).z
    )
    journal.close()


class _FailingAtaos:
    """An ATAOS remote whose ``offset`` raises ``error``, after counting the call."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0
        self.cmd_offset = self

    async def set_start(self, **kwargs: Any) -> None:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "state", "counted"),
    [
        # Never written (no ATAOS discovered): surely not applied, so not in the totals nor a move of M2.
        (CommandNotSentError("no ATAOS controller found", _ack(SalRetCode.CMD_NOACK)), "FAILED", False),
        (AckError("refused", _ack(SalRetCode.CMD_FAILED)), "FAILED", False),
        # Written but not confirmed: may have been applied.
        (AckTimeoutError("not done in time", _ack(SalRetCode.CMD_NOACK)), "UNCERTAIN", True),
        # ATAOS's own time limit fails the command after the offset entered its model.
        (
            AckError(
                "failed", _ack(SalRetCode.CMD_FAILED, "Failed: Timed out when waiting for correction loop")
            ),
            "UNCERTAIN",
            True,
        ),
        # Anything else while sending (a bug, a DDS failure) may come after the write.
        (RuntimeError("DDS write failed"), "UNCERTAIN", True),
    ],
)
def test_every_failure_while_sending_ends_the_attempt_in_a_defined_state(
    tmp_path: Path, error: BaseException, state: str, counted: bool
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sender = _sender(journal)
    sender.ataos = _FailingAtaos(error)
    _measured(journal, "G1", _received(journal, [obsid(1), obsid(2), obsid(3)]))
    offset = sender.prepare("G1")
    with pytest.raises(ExpectedError, match="ATAOS"):
        asyncio.run(sender.send("G1", offset))
    record = journal.correction("G1")
    assert record is not None and record.state is CorrectionState[state]
    np.testing.assert_allclose(journal.total_applied(), [0.2 if counted else 0.0, 0, 0, 0, 0])
    assert (journal.last_move() is not None) == counted
    journal.close()


def test_closed_loop_state_machine() -> None:
    loop = ClosedLoop()
    path = [ClosedLoopState.WAITING_IMAGE, ClosedLoopState.PROCESSING, ClosedLoopState.APPLYING_CORRECTION]
    for state in [*path, ClosedLoopState.WAITING_IMAGE, ClosedLoopState.IDLE]:
        assert loop.move(state)
    assert not loop.move(ClosedLoopState.IDLE)  # staying put is a no-op
    with pytest.raises(IllegalLoopTransitionError, match="from IDLE to PROCESSING: the loop is not running"):
        loop.move(ClosedLoopState.PROCESSING)
    loop.move(ClosedLoopState.WAITING_IMAGE)
    loop.move(ClosedLoopState.PROCESSING)
    loop.move(ClosedLoopState.APPLYING_CORRECTION)
    with pytest.raises(IllegalLoopTransitionError, match="never send it twice"):
        loop.move(ClosedLoopState.APPLYING_CORRECTION)
    # Every illegal move says something specific about its own pair of states.
    messages = []
    for old, new in itertools.product(ClosedLoopState, repeat=2):
        probe = ClosedLoop()
        probe.state = old
        if not probe.can_move(new):
            with pytest.raises(IllegalLoopTransitionError) as info:
                probe.move(new)
            messages.append(str(info.value))
    assert len(messages) == len(set(messages))
    assert all(f"from {m.split(' from ')[1].split(' to ')[0]} to" in m for m in messages)


class FakeSink:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.ready: list[str] = []

    def image_received(self, obsid, *, group_id, role, status, reason):
        self.events.append(("received", obsid, status, role))

    def cadence_warning(self, kind, *, group_id, obsid, message):
        self.events.append(("warning", obsid, kind))

    def image_queued(self, info, role, group_id):
        self.events.append(("queued", info.obsid, info.path, role, group_id))

    def triplet_ready(self, key):
        self.ready.append(key)

    def triplet_rejected(self, triplet, reason):
        self.events.append(("rejected", triplet.key, reason))

    def data_root_lost(self, message):
        self.events.append(("lost", message))


def test_intake_flow_and_recovery(tmp_path: Path) -> None:
    now = [0.0]
    sink = FakeSink()
    journal = Journal(tmp_path / "j.sqlite3")
    kwargs = dict(locator=RawLocator(str(tmp_path)), journal=journal, oods_timeout_s=5.0, sink=sink)
    intake = ImageIntake(limits=CadenceLimits(), clock=lambda: now[0], **kwargs)
    names = [write_raw(tmp_path, seq, r) for seq, r in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1)]
    for name in names[:2]:
        intake.on_end_readout(name, additional_keys="groupId", additional_values="G1", historical=False)
        intake.on_image_in_oods(name, status_code=0, description="", historical=False)
    assert [e[:3] for e in sink.events if e[0] == "received"] == [
        ("received", names[0], "accepted"),
        ("received", names[1], "accepted"),
    ]
    # Each accepted image is offered for work ahead of its triplet, with its path, role and group.
    queued = [e for e in sink.events if e[0] == "queued"]
    assert [(e[1], e[3], e[4]) for e in queued] == [
        (names[0], Role.INTRA, "G1"),
        (names[1], Role.EXTRA, "G1"),
    ]
    assert all(Path(e[2]).is_file() for e in queued)
    # The CSC stops here; a new intake on the same journal takes the queued images back.
    restarted = ImageIntake(limits=CadenceLimits(), clock=lambda: now[0], **kwargs)
    assert restarted.recover() == {"queued": 2, "announced": 0}
    restarted.on_image_in_oods(names[0], status_code=0, description="", historical=True)  # replay: silent
    restarted.on_image_in_oods(names[2], status_code=0, description="", historical=False)
    assert len(sink.ready) == 1 and journal.triplet(sink.ready[0]).state is TripletState.COMPLETE
    restarted.on_image_in_oods(names[0], status_code=0, description="", historical=False)  # live: duplicate
    assert sink.events[-1] == ("warning", names[0], "duplicate")
    # ATOODS heard before ATCamera: no warning; a bias announced then ingested: ignored, no warning.
    name = write_raw(tmp_path, 4, "INTRA", group="G2")
    restarted.on_image_in_oods(name, status_code=0, description="", historical=False)
    restarted.on_end_readout(name, additional_keys="groupId", additional_values="G2", historical=False)
    restarted.on_end_readout(
        obsid(5), additional_keys="imageType", additional_values="BIAS", historical=False
    )
    restarted.on_image_in_oods(obsid(5), status_code=0, description="", historical=False)
    assert [e[0] for e in sink.events[-3:]] == ["received", "queued", "received"]
    assert sink.events[-1][2] == "ignored" and journal.image(obsid(5)).status is ImageStatus.IGNORED
    # endReadout without imageInOODS and without a file: LOST after the timeout.
    restarted.on_end_readout(obsid(9), additional_keys="", additional_values="", historical=False)
    now[0] = 6.0
    restarted.housekeeping()
    assert journal.image(obsid(9)).status is ImageStatus.LOST
    # Stopped between endReadout and imageInOODS: after a restart the image still comes in (it was
    # taken for "already received").
    name = write_raw(tmp_path, 10, "INTRA", group="G3")
    restarted.on_end_readout(name, additional_keys="groupId", additional_values="G3", historical=False)
    again = ImageIntake(limits=CadenceLimits(), clock=lambda: now[0], **kwargs)
    assert again.recover()["announced"] == 1
    again.on_image_in_oods(name, status_code=0, description="", historical=False)
    assert journal.image(name).status is ImageStatus.QUEUED
    assert sink.events[-1][:3] == ("queued", name, sink.events[-1][2])
    journal.close()


def test_kind_names_and_summary_round_trip(tmp_path: Path) -> None:
    from lsst.ts.auxtelwep.cadence import RejectionKind, WarningKind

    assert kind_name(WarningKind.OUT_OF_ORDER) == "outOfOrder"
    assert kind_name(WarningKind.POINTING_MOVED) == "pointingChanged"
    assert kind_name(WarningKind.MISSING_PARTNER) == "timeout"
    assert kind_name(RejectionKind.UNKNOWN_ROLE) == "unknownRole"
    names = [write_raw(tmp_path, seq, r) for seq, r in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1)]
    infos = [read_image_info(RawLocator(str(tmp_path)).find(n)) for n in names]
    summary = fake_processor(Triplet("G1", *infos), {})
    assert WepSummary.from_dict(summary.to_dict()) == summary
    # A result journaled before the correction's uncertainty was recorded still reads (as unknown: 0).
    older = {k: v for k, v in summary.to_dict().items() if k != "correction_sigma"}
    assert WepSummary.from_dict(older).correction_sigma == HexapodState()
    assert pickle.loads(pickle.dumps(summary)) == summary
    with pytest.raises(ConfigurationError, match="must have the same length"):
        WepSummary(**{**summary.__dict__, "zernikes_um": (0.1,)})
    assert Role.INFOCUS.value == "infocus"


def test_summarize_a_pipeline_result() -> None:
    """`summarize` reads the pipeline's result types."""
    from lsst.ts.auxtelwep.correction import HexapodCorrection
    from lsst.ts.auxtelwep.csc_worker import summarize
    from lsst.ts.auxtelwep.detection.catalog import DonutCatalog
    from lsst.ts.auxtelwep.estimation import PairEstimate, WavefrontEstimate
    from lsst.ts.auxtelwep.pipeline import WavefrontResult

    noll = (4, 5, 6)
    pairs = tuple(
        PairEstimate(index=i, zernikes_um=None, zernikes_err_um=None, used=i < 3, reason="", algorithm="tie",
                     chi2_reduced=c)
        for i, c in enumerate((1.2, 0.9, float("nan"), 50.0))
    )  # fmt: skip
    estimate = WavefrontEstimate(
        noll=noll, um=np.array([0.1, -0.02, 0.03]), um_err=np.full(3, 0.004), scatter_um=np.zeros(3),
        pairs=pairs, algorithm="tie", elapsed_s=0.5,
    )  # fmt: skip
    catalog = DonutCatalog(
        donuts=(), mode="refit", requested_mode="auto", reason="wcs off", wcs_scatter_arcsec=None
    )
    solved = HexapodState(x=0.2, y=-0.1, z=0.03)
    correction = HexapodCorrection(
        offset=solved, solved_axes=("x", "y", "z"), sigma=HexapodState(),
        residual_rms_um=0.01, ops_offset=HexapodState(),
    )  # fmt: skip
    result = WavefrontResult(
        group_id="G1", intra_obsid=obsid(1), extra_obsid=obsid(2), infocus_obsid=None, camera_angle_deg=0.0,
        catalog=catalog, estimate=estimate, correction=correction, timings_s={"isr": 1.0, "total": 3.0},
    )  # fmt: skip
    summary = summarize(result)
    assert summary.noll == noll and summary.zernikes_um == (0.1, -0.02, 0.03)
    assert summary.donut_count == 3  # pairs used, the fourth was not
    assert summary.reduced_chi2 == pytest.approx(1.05)  # median of the finite chi2 of used pairs
    assert np.isnan(summary.wcs_scatter_arcsec) and summary.detection_mode == "refit"
    assert summary.correction == solved  # the full correction: the CSC applies gains and limits
    assert summary.timings_s == {"isr": 1.0, "total": 3.0}


def test_a_cancelled_worker_run_ends_even_if_the_worker_just_answered() -> None:
    import asyncio
    import math

    from lsst.ts.auxtelwep.csc_worker import WorkerPool

    async def cancel_as_the_answer_comes() -> list[Any]:
        pool = WorkerPool(n_workers=1)
        try:
            await pool.run(math.sqrt, 4.0, timeout=60)  # the worker is up
            task = asyncio.create_task(pool.run(math.sqrt, 9.0, timeout=60))
            await asyncio.sleep(0)
            time.sleep(0.5)  # the loop is blocked while the worker answers
            task.cancel()
            return await asyncio.gather(task, return_exceptions=True)
        finally:
            pool.close()

    # Returning 3.0 instead would leave a cancelled CSC task running forever (a hang at stop).
    (outcome,) = asyncio.run(cancel_as_the_answer_comes())
    assert isinstance(outcome, asyncio.CancelledError)


def test_worker_pool_survives_dead_and_stuck_workers(tmp_path: Path) -> None:
    import asyncio

    from lsst.ts.auxtelwep.csc_worker import WorkerError, WorkerPool

    names = [write_raw(tmp_path, seq, r) for seq, r in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1)]
    triplet = Triplet("G1", *[read_image_info(RawLocator(str(tmp_path)).find(n)) for n in names])

    async def scenario() -> WepSummary:
        pool = WorkerPool(n_workers=1)
        try:
            with pytest.raises(WorkerError, match="died while processing"):
                await pool.run(dying_processor, triplet, {}, timeout=60.0)
            with pytest.raises(WorkerError, match="did not finish within 1 s"):
                await pool.run(fake_processor, triplet, {"fake_sleep_s": 30.0}, timeout=1.0)
            return await pool.run(fake_processor, triplet, {}, timeout=60.0)  # the restarted pool works
        finally:
            pool.close()

    assert asyncio.run(scenario()).donut_count == 3


def test_work_ahead_calibrates_defocal_images_then_estimates_the_pair() -> None:
    from lsst.ts.auxtelwep.csc_worker import WorkAhead, estimate_ahead, prepare_raw
    from lsst.ts.auxtelwep.intake import ImageInfo

    class RecordingPool:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        async def run(self, func, *args, timeout):
            self.calls.append((func, *args[:-1]))
            if args[0] == "bad.fits":
                raise RawFormatError("bad.fits: truncated")

    async def scenario() -> RecordingPool:
        pool, ahead = RecordingPool(), WorkAhead()
        queue = [("i.fits", Role.INTRA, "G1"), ("f.fits", Role.INFOCUS, "G1"), ("bad.fits", Role.INTRA, "G2")]
        queue += [("e.fits", Role.EXTRA, "G1")]
        for path, role, group in queue:
            info = ImageInfo(obsid=path, path=path, group_id=group)
            ahead.image_queued(pool, info, role, group, options={"apply_isr": True}, timeout_s=60.0)
        await asyncio.sleep(0.05)
        # Groups that never get their partner are not remembered for ever.
        for k in range(WorkAhead.max_groups + 3):
            info = ImageInfo(obsid=f"x{k}", path=f"x{k}.fits", group_id=f"H{k}")
            ahead.image_queued(pool, info, Role.EXTRA, f"H{k}", options={}, timeout_s=60.0)
        assert len(ahead._defocal) == WorkAhead.max_groups
        await ahead.cancel()
        assert not ahead._defocal
        return pool

    calls = asyncio.run(scenario()).calls
    # The in-focus image waits for the triplet; a failure ahead is only logged.
    assert calls[:4] == [
        (prepare_raw, "i.fits"),
        (prepare_raw, "bad.fits"),
        (prepare_raw, "e.fits"),
        (estimate_ahead, "i.fits", "e.fits"),
    ]


@pytest.mark.parametrize("gain", [-0.5, 1.5, 5.0])
def test_a_gain_outside_0_1_is_refused(gain: float) -> None:
    # Above 1 overshoots the aligned position; below 0 moves away from it (0 holds an axis still).
    with pytest.raises(pydantic.ValidationError, match=r"every gain must be in \[0, 1\]"):
        ApplyConfig.model_validate({"gains": {"x": gain, "y": 1.0, "z": 1.0, "u": 1.0, "v": 1.0}})
    assert ApplyConfig.model_validate({"gains": {"x": 0.0, "y": 0.0, "z": 0.9, "u": 0, "v": 0}})
    assert ApplyConfig.model_validate({"gains": {"x": 0.5, "y": 0.5, "z": 0.9, "u": 1, "v": 1}})


def test_a_pair_takes_the_mean_camera_angle_of_its_images() -> None:
    # Only the intra image's angle was used: the rotator tracks between the two exposures.
    assert pair_camera_angle(45.0, 46.0) == pytest.approx(45.5)
    assert pair_camera_angle(179.0, -179.0) == pytest.approx(-180.0)  # across the wrap, not 0
    assert pair_camera_angle(None, 30.0) == 30.0 and pair_camera_angle(None, None) is None
