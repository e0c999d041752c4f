"""The journal: images, triplets and corrections survive a SIGKILL, and a correction is claimed only once."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lsst.ts.auxtelwep.cadence import Triplet, TripletState
from lsst.ts.auxtelwep.errors import CadenceError, ConfigurationError, InputError
from lsst.ts.auxtelwep.instrument import HexapodState, Role
from lsst.ts.auxtelwep.intake import ImageInfo
from lsst.ts.auxtelwep.journal import CorrectionState, ImageStatus, Journal

SRC = Path(__file__).resolve().parents[1] / "python"


def make_triplet(n: int = 1) -> Triplet:
    infos = [ImageInfo(obsid=f"AT_O_20240624_{3 * n + i:06d}", group_id=f"G{n}") for i in range(3)]
    return Triplet(group_id=f"G{n}", intra=infos[0], extra=infos[1], infocus=infos[2])


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "state" / "journal.sqlite3")
    yield j
    j.close()


def test_images_are_recorded_once(journal: Journal) -> None:
    info = ImageInfo(obsid="AT_O_20240624_000001", group_id="G", reason="INTRA", focus_z_mm=0.8)
    assert journal.add_image(info.obsid, status=ImageStatus.ANNOUNCED, group_id="G")
    assert not journal.add_image(info.obsid, status=ImageStatus.QUEUED)  # duplicate: refused, unchanged
    assert journal.image(info.obsid).status is ImageStatus.ANNOUNCED
    journal.update_image(info.obsid, status=ImageStatus.QUEUED, info=info, role=Role.INTRA)
    record = journal.image(info.obsid)
    assert (record.status, record.role, record.info) == (ImageStatus.QUEUED, Role.INTRA, info)
    assert [r.obsid for r in journal.images(ImageStatus.QUEUED)] == [info.obsid]
    assert journal.image("AT_O_20240624_000099") is None
    with pytest.raises(InputError, match="no image 'AT_O_20240624_000099'"):
        journal.update_image("AT_O_20240624_000099", status=ImageStatus.LOST)


def test_triplet_lifecycle_and_attempts(journal: Journal) -> None:
    triplet = make_triplet()
    for image in triplet.images:
        journal.add_image(image.obsid, status=ImageStatus.QUEUED, info=image)
    assert journal.add_triplet(triplet, source="events")
    assert not journal.add_triplet(triplet, source="runWEP")
    assert {journal.image(i.obsid).status for i in triplet.images} == {ImageStatus.IN_TRIPLET}
    assert journal.image(triplet.intra.obsid).triplet_key == triplet.key
    record = journal.set_triplet_state(triplet.key, TripletState.PROCESSING)
    assert record.attempts == 1
    journal.set_triplet_state(triplet.key, TripletState.COMPLETE, reason="resumed after a restart")
    journal.set_triplet_state(triplet.key, TripletState.PROCESSING)
    done = journal.set_triplet_state(triplet.key, TripletState.DONE, result={"z4_um": 0.1})
    assert (done.attempts, done.result, done.triplet) == (2, {"z4_um": 0.1}, triplet)
    with pytest.raises(CadenceError, match="already published"):
        journal.set_triplet_state(triplet.key, TripletState.PROCESSING)
    assert journal.triplets(TripletState.DONE)[0].key == triplet.key
    assert journal.triplets(TripletState.COMPLETE, TripletState.PROCESSING) == []


def test_correction_is_claimed_only_once(journal: Journal) -> None:
    key = make_triplet().key
    raw = HexapodState(x=0.1, y=-0.2, z=0.03)
    record = journal.add_correction(key, "G1", raw)
    assert record.state is CorrectionState.COMPUTED and record.raw == raw and record.applied is None
    sent = HexapodState(x=0.05, y=-0.1, z=0.027)
    assert journal.claim_correction(key, sent)
    assert not journal.claim_correction(key, sent)  # second claim refused: never sent twice
    journal.finish_correction(key, CorrectionState.FAILED, message="ATAOS refused")
    assert journal.claim_correction(key, sent)  # a definite refusal may be retried
    journal.finish_correction(key, CorrectionState.APPLIED)
    assert not journal.claim_correction(key, sent)
    with pytest.raises(InputError, match="is APPLIED, not APPLYING"):
        journal.finish_correction(key, CorrectionState.UNCERTAIN)
    np.testing.assert_allclose(journal.total_applied(), sent.as_array())
    # Starting the closed loop is not a new epoch: the totals go on (only enable restarts them).
    started = journal.mark_loop_start()
    assert journal.loop_start_time() == started
    np.testing.assert_allclose(journal.total_applied(), sent.as_array())
    # A new epoch (enable) restarts the totals, and ends the loop that started before it.
    journal.new_epoch("enable")
    np.testing.assert_allclose(journal.total_applied(), 0.0)
    assert journal.loop_start_time() == journal.epoch_start_time() >= started
    # A newer result supersedes an unsent one.
    journal.add_correction("k2", "G2", raw)
    journal.add_correction("k3", "G3", raw)
    assert journal.correction("k2").state is CorrectionState.SUPERSEDED
    assert journal.last_correction().triplet_key == "k3"


def test_state_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal
        from lsst.ts.auxtelwep.instrument import HexapodState
        from lsst.ts.auxtelwep.journal import ImageStatus, Journal
        j = Journal({str(path)!r})
        j.add_image("AT_O_20240624_000001", status=ImageStatus.QUEUED)
        j.add_correction("k", "G", HexapodState(z=0.02))
        j.claim_correction("k", HexapodState(z=0.018))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    journal = Journal(path)
    try:
        assert journal.image("AT_O_20240624_000001").status is ImageStatus.QUEUED
        assert journal.correction("k").state is CorrectionState.APPLYING
        assert journal.correction("k").applied == HexapodState(z=0.018)
        assert not journal.claim_correction("k", HexapodState(z=0.018))
    finally:
        journal.close()


def test_unusable_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_db.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError, match=r"not_a_db\.sqlite3: cannot open the journal"):
        Journal(bad)
