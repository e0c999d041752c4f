"""The stamp-level closed loop: this package's correction converges where the ops rule needs more steps."""

import numpy as np

from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.sim.loop import closed_loop, is_converged


def test_model_rule_converges_in_two_where_ops_rule_needs_three() -> None:
    initial = HexapodState(x=0.1, y=0.42, z=-0.06)
    model = closed_loop(initial, rule="model", seed=5, camera_angle_deg=40.0, max_iterations=3)
    ops = closed_loop(initial, rule="ops", seed=5, camera_angle_deg=40.0, max_iterations=3)
    # Model-based correction with gain 1: one step removes the misalignment to a few um, the second
    # triplet confirms it.
    assert len(model) == 2 and model[-1].converged
    final = model[-1].state
    assert np.hypot(final.x, final.y) < 0.02 and abs(final.z) < 0.003
    # The ops rule (gains 0.5 on decenter) leaves ~0.2 mm after the first step and needs a third triplet.
    assert len(ops) >= 3
    assert not ops[1].converged


def test_convergence_criterion_is_the_ops_scripts() -> None:
    assert is_converged(HexapodState(x=0.1, y=0.1, z=0.003))
    assert not is_converged(HexapodState(x=0.15, y=0.15, z=0.0))
    assert not is_converged(HexapodState(z=-0.005))
