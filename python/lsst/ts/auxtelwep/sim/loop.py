"""A closed focus loop on a simulated AuxTel, at the stamp level (no files, no DDS).

Each iteration renders batoid-traced intra/extra donut pairs from the telescope's *current* M2 state,
estimates the wavefront with the pipeline's estimator, turns it into a hexapod offset with a correction
rule, and applies the offset. Two rules run on the same simulated telescope:

- ``"model"``: this package's correction (`correction.compute_correction`: batoid sensitivity at the
  donuts' field positions, configured gains);
- ``"ops"``: the ops script's rule (ts_externalscripts latiss_base_align: ``[-Z8, Z7, Z4]``, published
  matrix, gains 0.5, 0.5, 0.9; FACTS.md section 2), applied with its sign (the script's defect of always
  applying +0.12 mm above 0.12 mm of focus is not reproduced).

Convergence is the ops script's criterion on the offset a measurement asks for: ``|z| < 0.004 mm`` and
``hypot(x, y) < 0.2 mm``; the iteration count is the number of triplets taken, the converging one included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..correction import CorrectionConfig, compute_correction, ops_script_correction
from ..estimation import EstimationConfig, estimate_wavefront
from ..instrument import AuxTel, HexapodState
from .optics import render_stamp_pair

__all__ = ["LoopStep", "closed_loop", "is_converged"]

Rule = Literal["model", "ops"]
OPS_GAINS = (0.5, 0.5, 0.9)
CONVERGED_Z_MM = 0.004
CONVERGED_DECENTER_MM = 0.2


@dataclasses.dataclass(frozen=True)
class LoopStep:
    """One iteration of the loop.

    Attributes
    ----------
    state : `HexapodState`
        True M2 misalignment when the triplet was taken (hexapod frame).
    noll : `tuple` of `int`
        Noll indices of ``zernikes_um``.
    zernikes_um : `numpy.ndarray`
        Measured in-focus deviation (combined over donuts), micrometres.
    offset : `HexapodState`
        Offset the rule asked for.
    converged : `bool`
        Whether ``offset`` meets the convergence criterion (then it is not applied).
    """

    state: HexapodState
    noll: tuple[int, ...]
    zernikes_um: np.ndarray
    offset: HexapodState
    converged: bool


def is_converged(offset: HexapodState) -> bool:
    """The ops script's criterion on a requested offset.

    Parameters
    ----------
    offset : `HexapodState`
        Requested offset (mm); converged when ``|z|`` < `CONVERGED_Z_MM` and the decenter <
        `CONVERGED_DECENTER_MM`.
    """
    return abs(offset.z) < CONVERGED_Z_MM and float(np.hypot(offset.x, offset.y)) < CONVERGED_DECENTER_MM


def closed_loop(
    initial: HexapodState,
    *,
    rule: Rule,
    seed: int,
    max_iterations: int = 5,
    fields_deg: Sequence[tuple[float, float]] = ((0.0, 0.0),),
    camera_angle_deg: float = 0.0,
    seeing_arcsec: float = 1.0,
    flux: float = 2.0e6,
    sky: float = 100.0,
    estimation: EstimationConfig | None = None,
    correction: CorrectionConfig | None = None,
) -> list[LoopStep]:
    """Run the loop until it converges or ``max_iterations`` triplets were taken.

    Parameters
    ----------
    initial : `HexapodState`
        Initial M2 misalignment, hexapod frame.
    rule : {"model", "ops"}
        Correction rule (module docstring).
    seed : `int`
        Seed of the image noise (each iteration and donut gets its own stream).
    max_iterations : `int`
        Most triplets to take.
    fields_deg : sequence of ``(x, y)``
        Field angles of the stars, degrees.
    camera_angle_deg : `float`
        Camera rotation relative to the hexapod frame, degrees.
    seeing_arcsec, flux, sky : `float`
        Seeing FWHM, electrons per donut, sky electrons per pixel.
    estimation, correction : configurations, optional
        Estimator and (for ``"model"``) correction settings.

    Returns
    -------
    steps : `list` of `LoopStep`
        One per triplet taken; the last one is converged unless the loop ran out of iterations.
    """
    estimation = estimation or EstimationConfig()
    correction = correction or CorrectionConfig()
    nominal = AuxTel().with_camera_angle(camera_angle_deg)
    state = initial
    steps: list[LoopStep] = []
    for iteration in range(max_iterations):
        pairs = []
        for index, (fx, fy) in enumerate(fields_deg):
            rendered = render_stamp_pair(
                nominal.with_hexapod(state),
                fx,
                fy,
                seeing_arcsec=seeing_arcsec,
                flux=flux,
                sky=sky,
                seed=seed * 1000 + iteration * 10 + index,
            )
            pairs.append(rendered.donut_pair(index=index))
        estimate = estimate_wavefront(pairs, config=estimation, telescope=nominal)
        if rule == "model":
            used = [p for p in estimate.pairs if p.used]
            offset = compute_correction(
                estimate.noll,
                np.array([p.zernikes_um for p in used]),
                np.array([p.zernikes_err_um for p in used]),
                np.array([fields_deg[p.index] for p in used]),
                telescope=nominal,
                config=correction,
                fields_from_pixels=False,  # the stamps carry their stars' true fields
            ).offset
        else:
            offset = ops_script_correction(
                estimate.noll, estimate.um, camera_angle_deg=camera_angle_deg, gains=OPS_GAINS
            )
        converged = is_converged(offset)
        steps.append(LoopStep(state, estimate.noll, estimate.um, offset, converged))
        if converged:
            break
        state = state + offset
    return steps
