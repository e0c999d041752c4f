"""What the CSC writes for a result: the AuxTelWEP events, mirroring the MTAOS names.

Each function takes the CSC (a `sal.Controller` with the AuxTelWEP topics) and writes with
``force_output=True``, so two equal results still give two events. Zernikes are micrometres with their Noll
indices beside them, padded with zeros to `ZERNIKE_SLOTS` entries (``numZernikes`` says how many are used);
hexapod offsets are mm (x, y, z) and degrees (u, v).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml

from .cadence import Triplet
from .csc_worker import WepSummary
from .instrument import HexapodState
from .sal import ExpectedError

__all__ = [
    "ZERNIKE_SLOTS",
    "parse_overrides",
    "publish_correction",
    "publish_rejected",
    "publish_result",
    "zernike_slots",
]

#: Length of the Zernike arrays of ``wavefrontError`` and ``zernikeCorrection``.
ZERNIKE_SLOTS = 28

log = logging.getLogger(__name__)


def zernike_slots(summary: WepSummary) -> tuple[list[int], list[float], list[float]]:
    """Noll indices, values and errors (um) padded (or cut) to `ZERNIKE_SLOTS` entries.

    Parameters
    ----------
    summary : `WepSummary`
        The result.
    """
    n = min(len(summary.noll), ZERNIKE_SLOTS)
    pad = ZERNIKE_SLOTS - n
    return (
        list(summary.noll[:n]) + [0] * pad,
        list(summary.zernikes_um[:n]) + [0.0] * pad,
        list(summary.zernikes_err_um[:n]) + [0.0] * pad,
    )


def _obsids(triplet: Triplet) -> dict[str, str]:
    return dict(
        intraObsid=triplet.intra.obsid,
        extraObsid=triplet.extra.obsid,
        inFocusObsid=triplet.infocus.obsid if triplet.infocus is not None else "",
    )


def publish_result(csc: Any, triplet: Triplet, summary: WepSummary) -> None:
    """Write ``donutDetection``, ``wavefrontError``, ``hexapodCorrection`` (applied=false) and
    ``wepDuration``.

    Parameters
    ----------
    csc : `AuxTelWepCsc`
        The CSC whose events are written.
    triplet : `Triplet`
        The processed triplet (group id and OBSIDs).
    summary : `WepSummary`
        Its result.
    """
    group = triplet.group_id
    csc.evt_donutDetection.set_write(
        groupId=group,
        mode=summary.detection_mode,
        reason=summary.detection_reason,
        donutCount=summary.donut_count,
        wcsScatter=summary.wcs_scatter_arcsec,
        force_output=True,
    )
    noll, values, errors = zernike_slots(summary)
    if len(summary.noll) > ZERNIKE_SLOTS:
        log.warning(f"group {group}: {len(summary.noll)} Zernikes, only the first {ZERNIKE_SLOTS} published")
    csc.evt_wavefrontError.set_write(
        groupId=group,
        **_obsids(triplet),
        nollZernikeIndices=noll,
        nollZernikeValues=values,
        nollZernikeErrors=errors,
        numZernikes=min(len(summary.noll), ZERNIKE_SLOTS),
        donutCount=summary.donut_count,
        reducedChi2=summary.reduced_chi2,
        residualStructure=summary.residual_structure,
        algorithm=summary.algorithm,
        force_output=True,
    )
    publish_correction(csc, group, summary.correction, summary, applied=False)
    t = summary.timings_s
    nan = float("nan")
    csc.evt_wepDuration.set_write(
        groupId=group,
        calcTime=t.get("total", nan),
        isrTime=t.get("isr", nan),
        detectionTime=t.get("detection", nan),
        estimationTime=t.get("estimation", nan),
        force_output=True,
    )


def publish_correction(
    csc: Any, group_id: str, offset: HexapodState, summary: WepSummary | None, *, applied: bool
) -> None:
    """Write ``hexapodCorrection``: the computed correction (applied=false) or what was sent
    (applied=true), with the solved axes, the 1-sigma uncertainty of the computed correction and the camera
    angle of its frame from ``summary`` (the result it came from; None: unknown).

    Parameters
    ----------
    csc : `AuxTelWepCsc`
        The CSC whose event is written.
    group_id : `str`
        Group of the triplet the correction comes from.
    offset : `HexapodState`
        The correction computed, or the offset sent (mm, mm, mm, deg, deg).
    summary : `WepSummary` or None
        The result the correction came from; None: uncertainties 0, no solved axes, camera angle NaN.
    applied : `bool`
        Whether ``offset`` is what was sent to ATAOS.
    """
    sigma = summary.correction_sigma if summary is not None else HexapodState()
    csc.evt_hexapodCorrection.set_write(
        groupId=group_id,
        x=offset.x,
        y=offset.y,
        z=offset.z,
        u=offset.u,
        v=offset.v,
        xError=sigma.x,
        yError=sigma.y,
        zError=sigma.z,
        uError=sigma.u,
        vError=sigma.v,
        solvedAxes=",".join(summary.solved_axes if summary is not None else ()),
        applied=applied,
        cameraAngle=float("nan")
        if summary is None or summary.camera_angle_deg is None
        else summary.camera_angle_deg,
        force_output=True,
    )


def publish_rejected(csc: Any, triplet: Triplet, reason: str) -> None:
    """Write ``rejectedWavefrontError`` for a triplet that gave no result.

    Parameters
    ----------
    csc : `AuxTelWepCsc`
        The CSC whose event is written.
    triplet : `Triplet`
        The triplet (group id and OBSIDs).
    reason : `str`
        Why it gave no result.
    """
    csc.evt_rejectedWavefrontError.set_write(
        groupId=triplet.group_id, **_obsids(triplet), reason=reason, force_output=True
    )


def parse_overrides(text: str) -> dict[str, Any]:
    """Parse runWEP's ``config`` (a YAML or JSON mapping; blank for none).

    Parameters
    ----------
    text : `str`
        The ``config`` field of ``runWEP``.

    Returns
    -------
    overrides : `dict` [`str`, `object`]
        Pipeline options (`pipeline.PipelineConfig` fields); empty for a blank text.

    Raises
    ------
    ExpectedError
        If it is not YAML/JSON or not a mapping.
    """
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExpectedError(f"runWEP config is not YAML/JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ExpectedError(f"runWEP config must be a mapping, not {json.dumps(value)[:100]}")
    return value
