"""The night script against a stand-in AuxTelWEP, and the ops rule baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from helpers import IsolatedTestCase, small_scene
from standin_csc import StandInCsc

from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.sal import Domain
from lsst.ts.auxtelwep.sim.night_script import (
    ConvergenceRule,
    NightScript,
    NightScriptConfig,
    converged_iteration,
    ops_rule_run,
)
from lsst.ts.auxtelwep.sim.observatory import SimulatedObservatory, SimulatedTelescope

#: Positions are sums of a few float64 offsets: 1e-9 mm is far below anything physical.
TIGHT_MM = 1e-9
#: ... except after ATAOS offsets, whose fields are float32 (ts_xml): ~1e-7 relative.
F32_MM = 1e-6


def test_convergence_rule_limits():
    rule = ConvergenceRule()
    assert rule.met(HexapodState(x=0.1, y=0.1, z=0.003))
    assert not rule.met(HexapodState(x=0.15, y=0.15, z=0.0))  # decenter 0.21 mm
    assert not rule.met(HexapodState(z=-0.004))


def test_ops_rule_small_misalignment_stops_at_second_iteration():
    # Focus 0.02 mm needs one correction (0.9 gain leaves ~2 %); the second measurement confirms.
    run = ops_rule_run(HexapodState(x=0.1, z=0.02))
    assert run.iterations == 2
    assert len(run.path) == 2 and run.path[0] == HexapodState(x=0.1, z=0.02)
    assert run.corrections[0].z == pytest.approx(-0.02, abs=0.002)  # 0.9 gain x (4238/3901) ~ 0.98


def test_ops_rule_large_defocus_rule():
    # A focus correction above 0.12 mm is replaced by +0.12 mm whatever its sign (the script's defect):
    # toward focus it costs an extra iteration, away from focus the loop never converges.
    toward = ops_rule_run(HexapodState(x=0.3, y=-0.3, z=-0.14))
    assert toward.corrections[0].z > 0.12 and toward.iterations == 3
    assert toward.path[1].z == pytest.approx(-0.14 + 0.12, abs=TIGHT_MM)
    away = ops_rule_run(HexapodState(x=0.3, z=0.14), max_iter=3)
    assert away.iterations is None and len(away.path) == 3
    assert away.path[-1].z == pytest.approx(0.14 + 2 * 0.12, abs=TIGHT_MM)


class NightScriptTestCase(IsolatedTestCase):
    async def asyncSetUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.data_root = Path(tmp.name)

    async def run_night(self, misalignment, *, n_triplets, closed_loop=True, reject=frozenset()):
        telescope = SimulatedTelescope(misalignment)
        seen = []
        csc = StandInCsc(self.data_root, reject=reject)
        async with (
            csc,
            SimulatedObservatory(telescope, small_scene(), self.data_root, settle_s=0.01) as obs,
            Domain() as domain,
        ):
            config = NightScriptConfig(
                n_triplets=n_triplets, closed_loop=closed_loop, override="night.yaml", group_prefix="t",
                result_timeout_s=30, apply_timeout_s=10,
            )  # fmt: skip
            async with NightScript(
                domain, obs.camera, telescope, config=config, on_triplet=seen.append
            ) as script:
                await script.prepare_csc()
                outcomes = await script.run()
            script_moves = telescope.moves_by(domain.identity)
        assert seen == outcomes
        assert csc.start_overrides == ["night.yaml"]
        # The script's own defocus offsets (+dz, -(2 dz + 0.0011), +(dz + 0.0011) per triplet) cancel.
        total = HexapodState()
        for move in script_moves:
            total = total + move.delta
        assert len(script_moves) == 3 * n_triplets
        assert abs(total.as_array()).max() < F32_MM * n_triplets  # sent through ATAOS offset: float32
        return telescope, outcomes

    async def test_closed_loop_correction_then_rejection(self):
        start = HexapodState(x=0.3, y=-0.1, z=-0.1)
        telescope, outcomes = await self.run_night(start, n_triplets=2, reject=frozenset({"t-002"}))
        first, second = outcomes
        assert (first.index, first.group_id, second.group_id) == (1, "t-001", "t-002")
        assert first.obsids[1] == f"AT_O_20240624_{int(first.obsids[0][-6:]) + 1:06d}"
        assert first.hexapod_before == start and not first.rejected_reason
        # The stand-in's correction is minus the truth; it was applied through ATAOS as AuxTelWEP.
        assert first.correction.as_array()[:3] == pytest.approx([-0.3, 0.1, 0.1], abs=F32_MM)
        assert first.applied.as_array() == pytest.approx(first.correction.as_array(), abs=F32_MM)
        assert abs(first.hexapod_after.as_array()).max() < F32_MM
        assert converged_iteration(outcomes[:1], ConvergenceRule()) is None  # a large correction
        # Zernikes came from wavefrontError; Z7/Z8 of a 0.32 mm decenter are tens of nm.
        assert first.noll[:5] == (4, 5, 6, 7, 8)
        assert abs(first.zernike_nm(7)) + abs(first.zernike_nm(8)) > 20.0
        assert first.zernike_nm(4) == pytest.approx(first.true_zernike_nm(4), abs=1.0)  # stars are a subset
        assert first.total_s >= first.exposures_s > 0 and first.wep_time_s == pytest.approx(0.01)
        assert first.to_dict()["correction"]["x"] == pytest.approx(-0.3)
        # The rejected triplet: no Zernikes, no correction, M2 unmoved.
        assert second.rejected_reason == "stand-in rejection"
        assert second.correction is None and second.noll == ()
        assert second.applied == HexapodState() and second.hexapod_before == first.hexapod_after
        assert abs(telescope.hexapod.as_array()).max() < F32_MM
        assert converged_iteration(outcomes, ConvergenceRule()) is None
