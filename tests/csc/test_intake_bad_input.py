"""Every image the CSC's intake is told of is either taken or reported rejected with its reason: a raw with a
malformed header, a directory where the raw should be, or an error nobody foresaw."""

from pathlib import Path
from typing import Any

import pytest
from csc_fakes import obsid, write_raw

from lsst.ts.auxtelwep import csc_intake
from lsst.ts.auxtelwep.cadence import CadenceLimits
from lsst.ts.auxtelwep.csc_intake import ImageIntake
from lsst.ts.auxtelwep.intake import RawLocator
from lsst.ts.auxtelwep.journal import ImageStatus, Journal


class ReasonSink:
    def __init__(self) -> None:
        self.received: dict[str, tuple[str, str]] = {}

    def image_received(self, obsid, *, group_id, role, status, reason):
        self.received[obsid] = (status, reason)

    def cadence_warning(self, kind, *, group_id, obsid, message):
        pass

    def image_queued(self, info, role, group_id):
        pass

    def triplet_ready(self, key):
        pass

    def triplet_rejected(self, triplet, reason):
        pass

    def data_root_lost(self, message):
        raise AssertionError(message)


def _intake(tmp_path: Path, angle: float | None = None) -> tuple[ImageIntake, ReasonSink, Journal]:
    sink = ReasonSink()
    journal = Journal(tmp_path / "j.sqlite3")
    intake = ImageIntake(
        locator=RawLocator(str(tmp_path)),
        journal=journal,
        limits=CadenceLimits(),
        oods_timeout_s=5.0,
        sink=sink,
        clock=lambda: 0.0,
        camera_angle=lambda event_tai: angle,
    )
    return intake, sink, journal


def _arrive(intake: ImageIntake, name: str) -> None:
    intake.on_end_readout(name, additional_keys="groupId", additional_values="G1", historical=False)
    intake.on_image_in_oods(name, status_code=0, description="", historical=False)


def _assert_rejected(sink: Any, journal: Any, name: str, words: str) -> None:
    """``name`` was reported rejected with ``words`` in the reason, and journaled so."""
    status, reason = sink.received[name]
    assert status == "rejected" and words in reason, reason
    assert journal.image(name).status is ImageStatus.REJECTED
    journal.close()


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"SEQNUM": "inf"}, "SEQNUM='inf'"),
        ({"SEQNUM": "-inf"}, "SEQNUM='-inf'"),
        ({"SEQNUM": 1e300}, "SEQNUM=1e+300"),
        ({"DEC": 95.0}, "DEC=95.0"),
        ({"DAYOBS": "garbage"}, "DAYOBS='garbage'"),
    ],
)
def test_a_raw_with_a_malformed_header_is_reported_rejected(tmp_path: Path, keys: dict, named: str) -> None:
    intake, sink, journal = _intake(tmp_path)
    name = write_raw(tmp_path, 1, "INTRA", **keys)
    _arrive(intake, name)
    _assert_rejected(sink, journal, name, f"{name}.fits: header {named}")


def test_a_directory_where_the_raw_should_be_is_named_as_such(tmp_path: Path) -> None:
    intake, sink, journal = _intake(tmp_path)
    name = obsid(1)
    (tmp_path / "raw" / "20240624" / f"{name}.fits").mkdir(parents=True)
    _arrive(intake, name)
    assert sink.received[name][0] == "rejected"
    assert "is a directory, not a FITS file" in sink.received[name][1]
    journal.close()


def test_an_error_nobody_foresaw_still_reports_the_image(tmp_path: Path, monkeypatch: Any) -> None:
    def broken(path: Any) -> None:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(csc_intake, "read_image_info", broken)
    intake, sink, journal = _intake(tmp_path)
    name = write_raw(tmp_path, 1, "INTRA")
    _arrive(intake, name)
    _assert_rejected(
        sink,
        journal,
        name,
        f"{name}.fits: unexpected OverflowError: cannot convert float infinity to integer",
    )


def test_the_mount_angle_at_readout_survives_a_restart_before_the_raw_is_read(tmp_path: Path) -> None:
    # Held only in memory, it was lost when the CSC restarted between the readout and the raw's arrival.
    intake, _, journal = _intake(tmp_path, angle=45.0)
    name = obsid(1)
    intake.on_end_readout(name, additional_keys="groupId", additional_values="G1", historical=False)
    journal.close()
    intake, _, journal = _intake(tmp_path, angle=None)  # restarted; the mount is silent now
    intake.recover()
    write_raw(tmp_path, 1, "INTRA")
    intake.on_image_in_oods(name, status_code=0, description="", historical=False)
    assert journal.image(name).info.camera_angle_deg == 45.0
    journal.close()
