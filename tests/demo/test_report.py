"""The report folder from synthetic outcomes: summary numbers, convergence history, files, read-back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.report import (
    DemoReport,
    StampPanels,
    build_summary,
    convergence_history,
    write_report,
)
from lsst.ts.auxtelwep.sim.night_script import ConvergenceRule, OpsRuleRun, TripletOutcome

NOLL = (4, 5, 6, 7, 8)


def outcome(index, before, correction, *, rejected="", wep=2.0):
    """A triplet whose correction was applied exactly (when not rejected)."""
    applied = HexapodState() if rejected else correction
    values = () if rejected else (0.4 * before.z, 0.0, 0.0, 0.18 * before.y, -0.18 * before.x)
    return TripletOutcome(
        index=index,
        group_id=f"g-{index:03d}",
        obsids=(f"AT_O_20240624_{3 * index - 2:06d}", f"AT_O_20240624_{3 * index - 1:06d}", "x"),
        hexapod_before=before,
        hexapod_after=before + applied,
        noll=() if rejected else NOLL,
        zernikes_um=values,
        zernikes_err_um=tuple(0.001 for _ in values),
        true_zernikes_um=values,
        donut_count=0 if rejected else 4,
        reduced_chi2=math.nan if rejected else 1.1,
        algorithm="" if rejected else "danish",
        correction=None if rejected else correction,
        solved_axes="" if rejected else "x,y,z",
        camera_angle_deg=math.nan if rejected else 0.0,
        applied=applied,
        rejected_reason=rejected,
        wep_time_s=math.nan if rejected else wep,
        exposures_s=10.0,
        wait_s=5.0,
        total_s=15.0,
    )


def night():
    start = HexapodState(x=0.4, y=-0.2, z=0.13)
    first = outcome(1, start, HexapodState(x=-0.38, y=0.19, z=-0.128))
    second = outcome(2, first.hexapod_after, HexapodState(), rejected="no donuts")
    third = outcome(3, second.hexapod_after, HexapodState(x=-0.02, y=0.01, z=-0.002), wep=4.0)
    return start, [first, second, third]


def test_summary_counts_like_the_ops_script():
    start, outcomes = night()
    ops = OpsRuleRun(iterations=3, path=(start,), corrections=())
    summary = build_summary(outcomes, initial=start, rule=ConvergenceRule(), ops_run=ops, wall_s=60.0)
    # Triplet 1's correction is large; 2 is rejected; 3's correction is inside the limits.
    assert summary.converged_iteration == 3
    # After triplet 1 the truth is x 0.02, y -0.01, z 0.002 mm: inside the limits after one correction.
    assert summary.corrections_to_truth == 1
    assert summary.n_rejected == 1 and summary.ops_rule_iterations == 3
    assert summary.mean_wep_s == pytest.approx(3.0)  # the rejected triplet's NaN is left out
    assert summary.final_misalignment_mm == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    assert summary.initial_misalignment_mm == (0.4, -0.2, 0.13)
    with pytest.raises(InputError, match="no triplet"):
        build_summary([], initial=start, rule=ConvergenceRule(), ops_run=ops, wall_s=0.0)


def test_convergence_history_has_one_point_per_triplet_plus_the_end():
    _, outcomes = night()
    history = convergence_history(outcomes)
    assert len(history) == 4
    assert (history[0]["x"], history[0]["z"]) == (0.4, 0.13)
    assert history[0]["z4"] == pytest.approx(0.4 * 0.13 * 1000.0)
    assert math.isnan(history[1]["z7"]) and math.isnan(history[3]["z4"])
    assert history[3]["x"] == pytest.approx(0.0, abs=1e-12)


def test_write_report_folder(tmp_path):
    start, outcomes = night()
    ops = OpsRuleRun(iterations=None, path=(start,), corrections=())
    summary = build_summary(outcomes, initial=start, rule=ConvergenceRule(), ops_run=ops, wall_s=60.0)
    report = DemoReport(
        settings={"seed": 1},
        ops_baseline={"iterations": None},
        triplets=[o.to_dict() for o in outcomes],
        summary=summary,
    )
    rng = np.random.default_rng(2)
    data = rng.normal(size=(31, 31))
    panels = StampPanels(
        [{"data": data, "model": data * 0.9, "label": "intra #0"}], NOLL, (0.1, 0, 0, 0.02, 0)
    )
    files = write_report(tmp_path / "r", report, outcomes, first=panels, last=StampPanels([]))
    assert files.stamps_first is not None and files.stamps_first.stat().st_size > 10_000
    assert files.stamps_last is None  # nothing to draw
    assert files.convergence.stat().st_size > 10_000
    text = files.summary.read_text()
    assert "at iteration **3**" in text and "needs **more than 5**" in text
    assert "| 2 | g-002 |" in text and "no donuts" in text
    back = DemoReport.read(tmp_path / "r")
    assert back.summary == summary and back.triplets[0]["correction"]["x"] == pytest.approx(-0.38)
    with pytest.raises(InputError, match="not a readable demo report"):
        DemoReport.read(tmp_path / "missing.json")
