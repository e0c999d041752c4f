"""``auxtelwep demo`` end to end: the real AuxTelWEP CSC, simulated peers, night script, report folder."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import IsolatedTestCase
from rich.console import Console
from standin_csc import truth_processor

from lsst.ts.auxtelwep.csc import AuxTelWepCsc
from lsst.ts.auxtelwep.demo import DemoOptions, draw_misalignment, parse_initial, run_demo
from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.report import DemoReport


def test_parse_initial():
    assert parse_initial("0.3,-0.1,0.05") == HexapodState(x=0.3, y=-0.1, z=0.05)
    for bad in ("0.3,0.1", "a,b,c", "1,2,nan"):
        with pytest.raises(InputError, match="three numbers"):
            parse_initial(bad)


def test_hard_draws_need_three_ops_iterations():
    import numpy as np

    for seed in (0, 1):
        state, run = draw_misalignment(np.random.default_rng(seed), hard=True)
        assert run.iterations is None or run.iterations >= 3
        assert np.hypot(state.x, state.y) <= 0.5 and abs(state.z) <= 0.15


class DemoTestCase(IsolatedTestCase):
    async def test_demo_with_truth_processor(self):
        """Two triplets through the real CSC (pipeline replaced by the truth): converged at iteration 2."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report"
            options = DemoOptions(
                n_triplets=2, seed=5, initial=HexapodState(x=0.25, y=0.1, z=-0.13), out=out, n_stars=3,
                exptime_s=10.0, stamps=False, result_timeout_s=120.0,
            )  # fmt: skip
            console = Console(record=True, width=200)
            report, files = await run_demo(
                options,
                console=console,
                csc_factory=lambda config_dir: AuxTelWepCsc(config_dir=config_dir, processor=truth_processor),
            )
            text = console.export_text()
            s = report.summary
            assert s.converged_iteration == 2 and s.corrections_to_truth == 1
            assert s.ops_rule_iterations == 3  # the ops rule's large-defocus step costs it one more
            # Offsets go through ATAOS's float32 fields (ts_xml): ~1e-7 mm left.
            assert max(abs(v) for v in s.final_misalignment_mm) < 1e-6
            assert s.n_rejected == 0 and s.mean_triplet_s > 0
            assert "#1 demo" in text and "#2 demo" in text and "converged" in text
            on_disk = DemoReport.read(out)
            assert on_disk.summary == report.summary and len(on_disk.triplets) == 2
            assert [
                t["applied"]["x"] for t in json.loads(files.results.read_text())["triplets"]
            ] == pytest.approx([-0.25, 0.0], abs=1e-6)
            assert files.convergence.stat().st_size > 10_000 and files.stamps_first is None
            assert "| 1 |" in files.summary.read_text()
            override = yaml.safe_load((out / "config" / "demo.yaml").read_text())
            # The demo runs on the shipped correction defaults (full gain), applied automatically.
            assert override["correction"] == {"auto_apply": True}
            assert not Path(report.settings["data_root"]).exists()  # temporary raws were removed


class DemoPipelineTestCase(IsolatedTestCase):
    @pytest.mark.slow
    async def test_demo_with_the_pipeline(self):
        """Two small triplets through the CSC in its own process with the real pipeline, stamps drawn."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report"
            # x, y, z picked so the ops rule needs 3 iterations (its large-defocus step), checked below.
            options = DemoOptions(
                n_triplets=2, seed=11, initial=HexapodState(x=0.2, y=-0.25, z=-0.13), out=out, n_stars=3,
                exptime_s=10.0, result_timeout_s=240.0, camera_angle_deg=-75.0,
            )  # fmt: skip
            report, files = await run_demo(options, console=Console(record=True, width=200))
            s = report.summary
            assert s.ops_rule_iterations == 3 and s.n_rejected == 0
            assert s.converged_iteration in (1, 2)
            first, second = report.triplets
            # The raws carry no CAMANGLE, as real ones: the angle came from the simulated mount.
            assert first["camera_angle_deg"] == pytest.approx(-75.0) and first["solved_axes"] == "x,y,z"
            # One correction brings the truth inside the ops limits with margin: the model-based correction
            # is good to ~1 %, and 2 % of 0.13 mm is 0.003 mm.
            left = first["hexapod_after"]
            assert abs(left["z"]) < 0.004 and math.hypot(left["x"], left["y"]) < 0.05
            assert first["zernikes_um"][first["noll"].index(4)] == pytest.approx(
                first["true_zernikes_um"][first["noll"].index(4)], abs=0.02
            )  # 20 nm of ~550 nm: the in-focus deviation vs the intra-image truth (they differ by a few %)
            assert second["donut_count"] >= 1 and second["wep_time_s"] > 0
            assert files.stamps_first is not None and files.stamps_first.stat().st_size > 50_000
            assert files.stamps_last is not None
            assert "processing" in (out / "csc.log").read_text()
