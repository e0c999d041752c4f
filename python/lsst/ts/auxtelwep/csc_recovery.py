"""What the CSC checks and resumes when it is enabled: its dependencies, and the work left in the journal.

`dependency_problem` is the FAULT rule (the data root must be readable; a configured refcat file and
calibration directory must exist). `resume_work` brings the journal back after a (re)start: queued images
go back to the sequencer (once per journal), a correction found in flight becomes UNCERTAIN (reported, never
re-sent), and triplets that were being processed are queued again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import AuxTelWepConfig
from .csc_intake import ImageIntake
from .errors import AuxTelWepError
from .journal import CorrectionState, Journal
from .triplet import TripletState

__all__ = ["ERROR_CONFIG", "ERROR_DATA_ROOT", "dependency_problem", "resume_work"]

#: ``errorCode`` when the data root is unreadable.
ERROR_DATA_ROOT = 1
#: ``errorCode`` when the configuration names a refcat or calibration directory that is missing at enable.
ERROR_CONFIG = 2


def dependency_problem(config: AuxTelWepConfig, intake: ImageIntake) -> tuple[int, str] | None:
    """Return ``(errorCode, report)`` of the first missing dependency, or None when all are there.

    Parameters
    ----------
    config : `AuxTelWepConfig`
        The configuration (``refcat_path``, ``calibs_dir``).
    intake : `ImageIntake`
        The intake, whose locator checks the data root.
    """
    try:
        intake.locator.check_readable()
    except AuxTelWepError as exc:
        return ERROR_DATA_ROOT, str(exc)
    if config.refcat_path and not Path(config.refcat_path).expanduser().is_file():
        return ERROR_CONFIG, f"refcat_path={config.refcat_path!r} is not a file"
    if config.calibs_dir and not Path(config.calibs_dir).expanduser().is_dir():
        return ERROR_CONFIG, f"calibs_dir={config.calibs_dir!r} is not a directory"
    return None


def resume_work(journal: Journal, intake: ImageIntake, *, first: bool, log: logging.Logger) -> list[str]:
    """Resume journaled work (module docstring); return the keys of the triplets to process, in order.

    Parameters
    ----------
    journal : `journal.Journal`
    intake : `csc_intake.ImageIntake`
    first : `bool`
        True at the first enable after the journal was opened: the intake and in-flight corrections are
        recovered only then.
    log : `logging.Logger`
    """
    if first:
        counts = intake.recover()
        for record in journal.corrections(CorrectionState.APPLYING):
            message = (
                "the CSC stopped while this correction was being sent to ATAOS: it may or may not have "
                "been applied (check the hexapod); it will not be sent again"
            )
            journal.finish_correction(record.triplet_key, CorrectionState.UNCERTAIN, message=message)
            log.error(f"group {record.group_id}: {message}")
        if any(counts.values()):
            log.info(f"resumed from the journal: {counts}")
    for record in journal.triplets(TripletState.PROCESSING):
        journal.set_triplet_state(record.key, TripletState.COMPLETE, reason="resumed after an interruption")
    keys = []
    for record in journal.triplets(TripletState.COMPLETE):
        log.info(f"triplet {record.key} (group {record.group_id}) queued for processing")
        keys.append(record.key)
    return keys
