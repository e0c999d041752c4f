"""Offline reprocessing of a night: find the triplets among the raws of a data root and run the pipeline.

The triplets are formed by the CSC's own sequencer (`cadence.Sequencer`: roles from REASON/FOCUSZ, groups
by GROUPID within a DAYOBS, the interleaved order), fed with the raws in SEQNUM order, so a night
reprocessed offline is grouped as the CSC grouped it. Every raw ends up either in a processed triplet or in
a rejection with its reason (unreadable header, unknown role, duplicate, no partner...), as at the
telescope. A raw whose header's DAYOBS or SEQNUM disagrees with its OBSID is rejected before grouping:
which exposure it is cannot be told.

Raws are looked for at ``<data_root>/raw/<DAYOBS>/*.fits`` (and ``.fits.fz``), the CSC's layout.

Real raws do not carry the camera angle, which the lateral correction needs (the CSC reads it from the
mount at each readout): `read_camera_angles` takes it per image from a table, e.g. exported from the EFD;
without it a triplet solves focus only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .cadence import CadenceLimits, Sequencer
from .cadence import Triplet as CadenceTriplet
from .errors import AuxTelWepError, InputError, as_config
from .instrument import pair_camera_angle
from .intake import read_image_info
from .pipeline import PipelineConfig, Triplet, WavefrontResult, process

log = logging.getLogger(__name__)

__all__ = ["NightTriplets", "Rejected", "find_triplets", "process_triplets", "read_camera_angles"]

# Offline there is no arrival clock: images are spaced by this much in SEQNUM order, well inside the
# sequencer's grouping window, so only DAYOBS, GROUPID, role and order decide the grouping.
_SECONDS_PER_SEQNUM = 1.0


@dataclasses.dataclass(frozen=True)
class Rejected:
    """Images that did not make a processed triplet, and why.

    Attributes
    ----------
    obsids : `tuple` of `str`
        The images concerned (one, or a triplet's).
    group_id : `str`
        Their group, when known.
    reason : `str`
        Why, naming the values that decided it.
    """

    obsids: tuple[str, ...]
    group_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class NightTriplets:
    """What `find_triplets` made of a night.

    Attributes
    ----------
    triplets : `tuple` of `pipeline.Triplet`
        Complete triplets, in the order they were completed.
    rejected : `tuple` of `Rejected`
        Images and triplets refused, with reasons.
    warnings : `tuple` of `str`
        Cadence warnings (order, pointing), as the CSC would publish them.
    n_raws : `int`
        Raw files found.
    """

    triplets: tuple[Triplet, ...]
    rejected: tuple[Rejected, ...]
    warnings: tuple[str, ...]
    n_raws: int


def _raw_paths(data_root: Path, day_obs: str | None) -> list[Path]:
    raw_dir = data_root / "raw"
    if not raw_dir.is_dir():
        raise InputError(f"{data_root}: no raw/ directory (expected <data_root>/raw/<DAYOBS>/<OBSID>.fits)")
    day_dirs = [raw_dir / day_obs] if day_obs else sorted(p for p in raw_dir.iterdir() if p.is_dir())
    paths = [
        p
        for d in day_dirs
        if d.is_dir()
        for p in sorted(d.iterdir())
        if p.name.endswith((".fits", ".fits.fz"))
    ]
    if not paths:
        where = raw_dir / day_obs if day_obs else raw_dir
        raise InputError(f"{where}: no raw files (*.fits, *.fits.fz)")
    return paths


def read_camera_angles(path: str | Path) -> dict[str, float]:
    """Camera angles of images, from a table with columns ``obsid`` and ``camera_angle_deg``.

    The camera angle of an image is the mount's elevation minus its Nasmyth-2 angle at the image, degrees
    (`instrument.camera_angle_from_mount`: ATMCS ``mount_AzEl_Encoders.elevationCalculatedAngle`` and
    ``mount_Nasmyth_Encoders.nasmyth2CalculatedAngle`` in the EFD), what the CSC reads at each readout.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        A table astropy reads: ECSV, CSV (``.csv``), FITS...

    Returns
    -------
    angles : `dict` [`str`, `float`]
        Camera angle by OBSID, degrees.

    Raises
    ------
    InputError
        If the file cannot be read as a table, lacks a column, has an angle that is not a finite number,
        or gives one OBSID two different angles.
    """
    from astropy.table import Table

    path = Path(path)
    try:
        table = Table.read(path, format="ascii.csv" if path.suffix.lower() == ".csv" else None)
    except Exception as exc:  # astropy raises a variety for a file that is no table of its formats
        raise InputError(
            f"{path}: cannot read the camera angles as a table ({exc})", value=str(path)
        ) from exc
    missing = [c for c in ("obsid", "camera_angle_deg") if c not in table.colnames]
    if missing:
        raise InputError(
            f"{path}: no column {' or '.join(missing)} (columns: {', '.join(table.colnames)})",
            value=table.colnames,
            allowed=("obsid", "camera_angle_deg"),
        )
    angles: dict[str, float] = {}
    for row, (obsid, value) in enumerate(zip(table["obsid"], table["camera_angle_deg"], strict=True), 1):
        obsid = str(obsid).strip()
        try:
            angle = math.nan if np.ma.is_masked(value) else float(value)
        except (TypeError, ValueError):
            angle = math.nan
        if not math.isfinite(angle):
            raise InputError(
                f"{path}: row {row} ({obsid}): camera_angle_deg={str(value)!r} is no angle", value=value
            )
        if obsid in angles and angles[obsid] != angle:
            raise InputError(
                f"{path}: {obsid} has two camera angles, {angles[obsid]:g} and {angle:g} deg", value=obsid
            )
        angles[obsid] = angle
    return angles


def _pipeline_triplet(triplet: CadenceTriplet, camera_angles: Mapping[str, float]) -> Triplet:
    return Triplet(
        intra=Path(triplet.intra.path),
        extra=Path(triplet.extra.path),
        infocus=Path(triplet.infocus.path) if triplet.infocus is not None else None,
        group_id=triplet.group_id,
        # As the CSC: the pair's mean (the rotator tracks between the two exposures).
        camera_angle_deg=pair_camera_angle(
            camera_angles.get(triplet.intra.obsid), camera_angles.get(triplet.extra.obsid)
        ),
    )


def find_triplets(
    data_root: str | Path,
    *,
    day_obs: str | None = None,
    limits: CadenceLimits | None = None,
    camera_angles: Mapping[str, float] | None = None,
) -> NightTriplets:
    """Group the raws of a data root into triplets with the CSC's sequencer.

    Parameters
    ----------
    data_root : `str` or `pathlib.Path`
        Directory holding ``raw/<DAYOBS>/``.
    day_obs : `str`, optional
        Only this night (``YYYYMMDD``); default every night under ``raw/``.
    limits : `cadence.CadenceLimits`, optional
        Cadence rules (default: the CSC's defaults).
    camera_angles : mapping [`str`, `float`], optional
        Camera angle by OBSID, degrees (`read_camera_angles`); a triplet gets its defocal pair's mean
        (`instrument.pair_camera_angle`). Without one, the pipeline takes the header's CAMANGLE, if any,
        or solves focus only.

    Returns
    -------
    night : `NightTriplets`

    Raises
    ------
    InputError
        If the data root has no raws.
    """
    paths = _raw_paths(Path(data_root), day_obs)
    sequencer = Sequencer(limits=limits or CadenceLimits())
    infos = []
    rejected: list[Rejected] = []
    for path in paths:
        try:
            info = read_image_info(path)
        except AuxTelWepError as exc:
            rejected.append(Rejected((path.name,), "", f"unreadable header: {exc}"))
            continue
        except Exception as exc:  # one raw's surprise must not cost the rest of the night
            log.exception("unexpected error reading the header of %s", path)
            reason = f"unreadable header: {path}: unexpected {type(exc).__name__}: {exc}"
            rejected.append(Rejected((path.name,), "", reason))
            continue
        # Which exposure it is cannot be told: the sequencer orders by SEQNUM, and reports name the OBSID.
        disagreement = info.obsid_disagreement()
        if disagreement is not None:
            rejected.append(Rejected((info.obsid,), info.group_id, f"{path.name}: {disagreement}"))
            continue
        infos.append(info)
    infos.sort(key=lambda info: (info.day_obs, info.seq_num, info.obsid))
    triplets: list[Triplet] = []
    warnings: list[str] = []
    now_s = 0.0
    for info in infos:
        now_s += _SECONDS_PER_SEQNUM
        outcome = sequencer.add(info, now_s=now_s)
        if outcome.rejection is not None:
            rejection = outcome.rejection
            # Name the file: a copy of a raw carries its OBSID, and the two must be told apart.
            reason = f"{Path(info.path).name}: {rejection.message}"
            rejected.append(Rejected((rejection.obsid,), rejection.group_id, reason))
        warnings.extend(w.message for w in outcome.warnings)
        triplets.extend(_pipeline_triplet(t, camera_angles or {}) for t in outcome.triplets)
        rejected.extend(
            Rejected(tuple(i.obsid for i in r.triplet.images), r.triplet.group_id, r.message)
            for r in outcome.triplet_rejections
        )
    for group in sequencer.expire(now_s=math.inf):
        rejected.append(Rejected(group.obsids, group.group_id, group.message))
    return NightTriplets(tuple(triplets), tuple(rejected), tuple(warnings), len(paths))


def process_triplets(
    triplets: tuple[Triplet, ...], *, config: PipelineConfig | Mapping[str, Any]
) -> Iterator[tuple[Triplet, WavefrontResult | None, str]]:
    """Run the pipeline on each triplet; yield ``(triplet, result, "")`` or ``(triplet, None, reason)``.

    A triplet the pipeline refuses (bad raw, no donuts, failed fits...) is yielded with the error's message;
    the others go on, also after an error the pipeline did not foresee (named as such, with its type).

    Parameters
    ----------
    triplets : `tuple` of `Triplet`
        The triplets to process, in order (`find_triplets`).
    config : `PipelineConfig` or mapping
        Pipeline configuration (or its fields), the same for every triplet.

    Returns
    -------
    outcomes : iterator of (`Triplet`, `WavefrontResult` or `None`, `str`)
        Each triplet as it is processed, with its result (`None` when it was refused) and the reason it
        was refused (empty with a result).

    Raises
    ------
    ConfigurationError, InputError
        At the call, if ``config`` is neither a `PipelineConfig` nor a mapping of its valid fields (not once
        per triplet).
    """
    # Checked here, not in the generator, which would only run (and fail every triplet) when iterated.
    return _process_each(triplets, as_config("config", config, PipelineConfig))


def _process_each(
    triplets: tuple[Triplet, ...], config: PipelineConfig
) -> Iterator[tuple[Triplet, WavefrontResult | None, str]]:
    for triplet in triplets:
        try:
            yield triplet, process(triplet, config=config), ""
        except AuxTelWepError as exc:
            yield triplet, None, str(exc)
        except Exception as exc:  # one triplet's surprise must not cost the rest of the night
            log.exception("unexpected error on the triplet of %s", triplet.intra)
            yield triplet, None, f"unexpected error in the pipeline: {exc!r}"
